"""The sandbox's Kubernetes API server: HTTPS on loopback with client-certificate authentication, serving the
sandbox cluster's object store to real kubectl, helm and the kubernetes Python client."""
