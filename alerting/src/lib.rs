//! Telltale's alerting (not built yet).
//!
//! It will own: loading Telltale alarm policies and Prometheus rule files, evaluating them
//! against any Prometheus-compatible query API, the persisted alarm state machine, and the
//! notification outbox (email, webhook, Alertmanager). See `../shared/design/alarms.md`.
