//! `SourceExt`: the combinators, one line each; each stage lives in its own file.

use crate::chunk::Chunk;
use crate::error::Result;
use crate::stage::{Filter, Map, Preview, Resize};
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
