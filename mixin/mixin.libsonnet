// vastai-exporter's monitoring mixin: prometheusAlerts, prometheusRules and grafanaDashboards,
// configured by _config (config.libsonnet). They are the project's own rule file
// (deploy/prometheus/vastai-rules.yaml) and dashboards (grafana/dashboards/), copied into this
// directory by mixin/generate.py (the rules as JSON) so that the mixin is whole when vendored on
// its own; with the default _config the mixin renders them unchanged (a test holds it to that).
(import 'config.libsonnet') +
(import 'alerts/alerts.libsonnet') +
(import 'rules/rules.libsonnet') +
(import 'dashboards/dashboards.libsonnet')
