//! The job service's building blocks (cargo feature `server`): so far the file roots a
//! service reads and writes within ([`Roots`]).

mod paths;

pub use paths::Roots;
