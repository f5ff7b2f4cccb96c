//! Integration tests, one binary: every extra test binary re-links the dependency tree.

mod cli;
mod common;
mod contract;
mod corpus;
mod errors;
mod fanout;
mod interpolate;
mod lifecycle;
mod ltx;
mod preview;
mod resize;
mod runtime;
mod service;
mod sinks;
mod upscale;
mod video;
mod wan;
