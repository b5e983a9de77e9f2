//! tidegate policy.
