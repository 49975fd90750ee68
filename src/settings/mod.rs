//! settings (being written)
