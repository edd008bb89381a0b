// What a user of the mixin may set, e.g.
//   (import 'mixin.libsonnet') + { _config+:: { vastaiSelector: 'job="vast-prod"' } }
{
  _config+:: {
    // The label matchers of the exporter's scrape job(s), for the alerts that must know them:
    // VastaiExporterAbsent fires when no target they select is up. Recording rules aggregate by
    // job, and the dashboards pick jobs with their `job` variable, so neither needs it.
    vastaiSelector: 'job="vastai"',
    // Where the alerts' runbook_url annotations point: alert X links to
    // runbookURLBase + '#' + std.asciiLower(X), its section of docs/runbooks.md.
    runbookURLBase: 'https://github.com/vastai-exporter/vastai-exporter/blob/main/docs/runbooks.md',
  },
}
