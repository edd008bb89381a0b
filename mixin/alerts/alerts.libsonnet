// The alerts of vastai-rules.yaml with the job selector and the runbook base URL of _config.
local groups = import '../rules/groups.libsonnet';
local written = groups.written;

local runbook(config, alert) = config.runbookURLBase + '#' + std.asciiLower(alert);

local configure(config, rule) =
  local select(text) = std.strReplace(text, written.vastaiSelector, config.vastaiSelector);
  assert rule.annotations.runbook_url == runbook(written, rule.alert)
         : '%s: runbook_url is not %s' % [rule.alert, runbook(written, rule.alert)];
  rule {
    expr: select(rule.expr),
    annotations: {
      [name]: select(rule.annotations[name])
      for name in std.objectFields(rule.annotations)
    } + { runbook_url: runbook(config, rule.alert) },
  };

{
  prometheusAlerts+:: {
    groups+: [
      group { rules: [configure($._config, rule) for rule in group.rules] }
      for group in groups.alerting
    ],
  },
}
