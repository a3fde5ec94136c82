//! Reading Go binaries: build version, the pclntab (function names and file:line, which
//! survive `-s -w`), the runtime's g layout, and where runtime.allgs lives.
pub mod allgs;
pub mod buildinfo;
pub mod layout;
pub mod pclntab;
pub mod tables;
