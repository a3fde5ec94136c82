#![no_std]
// This file exists to enable the library target (aya-build needs a package with a bin target).
