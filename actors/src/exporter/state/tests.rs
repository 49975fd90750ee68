//! Step-by-step tests of the exporter's state machine.
