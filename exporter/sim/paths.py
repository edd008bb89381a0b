"""The paths of Vast's API that the simulated API answers (vast-ai/docs OpenAPI, vast-cli).

Worker lists are POSTed to run.vast.ai; account reads are GETs on console.vast.ai. The two worker
group paths are the same call under its older (autogroup) and newer (workergroup) names.
"""

ENDPOINT_WORKERS = "/get_endpoint_workers/"
AUTOGROUP_WORKERS = "/get_autogroup_workers/"
WORKERGROUP_WORKERS = "/get_workergroup_workers/"
GROUP_WORKERS = (AUTOGROUP_WORKERS, WORKERGROUP_WORKERS)
WORKER_LISTS = (ENDPOINT_WORKERS, *GROUP_WORKERS)

ENDPTJOBS = "/api/v0/endptjobs/"
WORKERGROUPS = "/api/v0/workergroups/"
AUTOJOBS = "/api/v0/autojobs/"  # the older name of /workergroups/
USER = "/api/v0/users/current/"
USER_NO_SLASH = "/api/v0/users/current"  # as vast-cli 1.9.1 calls it (vastai/api/billing.py)
CHARGES = "/api/v0/charges/"
INSTANCES = "/api/v1/instances/"
INSTANCES_V0 = "/api/v0/instances/"  # retired: 410
INSTANCE = "/api/v0/instances/{id}/"  # one instance, still served (show_instance.yaml)

# Deployments (show_deployments.yaml, show_deployment.yaml; vastai 1.9.1 vastai/api/deployments.py,
# whose `show deployments` calls the list without the trailing slash: both forms answer).
DEPLOYMENTS = "/api/v0/deployments/"
DEPLOYMENTS_NO_SLASH = "/api/v0/deployments"
DEPLOYMENT = "/api/v0/deployment/{id}/"
DEPLOYMENT_VERSIONS = "/api/v0/deployment/{id}/versions/"
# Supply and contracts (issue 23): the offer search is a POST with the search object as body.
BUNDLES = "/api/v0/bundles/"
PENDING_PRICE_INCREASES = "/api/v0/instances/pending-price-increases/"
