//! HTTP front end. (Being written.)
