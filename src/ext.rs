//! `SourceExt`: the combinators, one line each; each stage lives in its own file.

use std::future::Future;

use crate::chunk::Chunk;
use crate::error::Result;
use crate::source::Concat;
use crate::stage::{Filter, Map, Preview, Resize, Skip, Take, Then, Upscale};
use crate::stream::{Piped, Source, Stage};

/// Combinators on every [`Source`].
pub trait SourceExt: Source + Sized {
    /// Runs `stage` on this source's frames.
    fn pipe<T: Stage>(self, stage: T) -> Piped<Self, T> {
        Piped::new(self, stage)
    }

    /// Applies a closure to every chunk ([`Map`]).
    fn map<F>(self, name: impl Into<String>, f: F) -> Piped<Self, Map<F>>
    where
        F: Fn(Chunk) -> Result<Chunk> + Send + Sync + 'static,
    {
        self.pipe(Map::new(name, f))
    }

    /// Applies an async function to every chunk, in order ([`Then`]).
    fn then<F, Fut>(self, name: impl Into<String>, f: F) -> Piped<Self, Then<F>>
    where
        F: Fn(Chunk) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Chunk>> + Send + 'static,
    {
        self.pipe(Then::new(name, f))
    }

    /// The first `frames` frames ([`Take`]).
    fn take(self, frames: u64) -> Piped<Self, Take> {
        self.pipe(Take(frames))
    }

    /// All but the first `frames` frames ([`Skip`]).
    fn skip(self, frames: u64) -> Piped<Self, Skip> {
        self.pipe(Skip(frames))
    }

    /// This source's frames, then `next`'s ([`Concat`]).
    fn concat<B: Source>(self, next: B) -> Concat<Self, B> {
        Concat::new(self, next)
    }

    /// Upscales with a model or a classical filter ([`Upscale`]).
    fn upscale(self, upscale: Upscale) -> Piped<Self, Upscale> {
        self.pipe(upscale)
    }

    /// Takes previews as the frames pass ([`Preview`]).
    fn preview(self, preview: Preview) -> Piped<Self, Preview> {
        self.pipe(preview)
    }

    /// Resamples by `factor` ([`Resize`]).
    fn resize(self, factor: f64, filter: Filter) -> Piped<Self, Resize> {
        self.pipe(Resize::scale(factor, filter))
    }

    /// Erases the type, for pipelines built at run time.
    fn boxed(self) -> Box<dyn Source>
    where
        Self: 'static,
    {
        Box::new(self)
    }
}

impl<S: Source> SourceExt for S {}
