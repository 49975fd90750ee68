use super::*;

#[test]
fn the_memory_spool_keeps_the_contract() {
    conformance::check(&MemorySpool::new());
}

#[test]
fn the_memory_spool_never_trims_a_leased_batch() {
    conformance::leased_batches_survive_trimming(&MemorySpool::new());
}

#[test]
fn spool_config_rejects_out_of_range_values_naming_the_key() {
    assert!(SpoolConfig::default().validate().is_ok());
    let err = SpoolConfig { max_bytes: 10, ..Default::default() }.validate().unwrap_err();
    assert_eq!(err.key, "spool.max_bytes");
    let err = SpoolConfig { replay_batches_per_second: 0, ..Default::default() }.validate().unwrap_err();
    assert_eq!(err.key, "spool.replay_batches_per_second");
    let err =
        SpoolConfig { max_age: std::time::Duration::from_millis(5), ..Default::default() }.validate().unwrap_err();
    assert_eq!(err.key, "spool.max_age");
}
