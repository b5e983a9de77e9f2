//! tidegate placement.
