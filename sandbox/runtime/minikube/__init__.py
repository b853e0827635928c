"""The minikube target, split by concern:

- `facts`: where the cluster is (what the playbook recorded in `state/cluster.json`);
- `kubectl`: kubectl/minikube command lines and the runner that executes them;
- `documents`: reading InferenceService, pod and event documents;
- `model_store`: uploading models to the sandbox's S3 store;
- `target`: `MinikubeTarget` (build, upload, apply, wait, smoke, diagnose, status, logs).
"""

from sandbox.runtime.minikube.target import MinikubeTarget, context_answers, ingress_url

__all__ = ["MinikubeTarget", "context_answers", "ingress_url"]
