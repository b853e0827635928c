"""Runtimes (targets) an isvc runs on: local processes, docker containers, the minikube sandbox."""
