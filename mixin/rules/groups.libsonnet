// The groups of deploy/prometheus/vastai-rules.yaml (vastai-rules.json, its document as JSON),
// split into those of recording rules and those of alerts, and what the file is written for.
local groups = (import 'vastai-rules.json').groups;
// (std.all and std.any are newer than some jsonnet still in use: counted instead)
local alerts(group) = std.length([r for r in group.rules if std.objectHas(r, 'alert')]);
local alerting = [g for g in groups if alerts(g) == std.length(g.rules)];
local recording = [g for g in groups if alerts(g) == 0];

assert std.length(alerting) + std.length(recording) == std.length(groups)
       : 'every group of the rule file holds either alerts or recording rules';

{
  alerting: alerting,
  recording: recording,
  // The _config values the rule file is written with: the mixin replaces them by the user's.
  written: {
    vastaiSelector: 'job="vastai"',
    runbookURLBase: 'https://github.com/vastai-exporter/vastai-exporter/blob/main/docs/runbooks.md',
  },
}
