// The dashboards of grafana/dashboards/ (copies next to this file), as Grafana reads them: they
// query the exporter's own series through their datasource and job variables, so they need
// neither the recording rules nor a job selector. A new dashboard goes in this list too.
{
  grafanaDashboards+:: {
    'vastai-overview.json': import 'vastai-overview.json',
    'vastai-workers.json': import 'vastai-workers.json',
  },
}
