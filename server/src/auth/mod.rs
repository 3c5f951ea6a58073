//! The auth core. (Being written.)
