//! Synthetic fleets and job backlogs for benchmarks and tests (seeded, deterministic).
