// The recording rules, as vastai-rules.yaml has them: they aggregate by job and select no job.
local groups = import 'groups.libsonnet';

{
  prometheusRules+:: {
    groups+: groups.recording,
  },
}
