//! tidegate model.
