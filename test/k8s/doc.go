// Package k8s holds the offline checks of the Kubernetes deployment: the Helm chart in
// deploy/helm/storage-api is linted, rendered and packaged with helm's own Go packages (the same
// engine, schema validation and linter as the helm CLI, whose output it reproduces byte for byte), and
// every rendered object is decoded strictly into the typed Kubernetes and prometheus-operator
// API structs, so a misspelt field or a wrong type fails. It is a separate module so those
// heavy dependencies stay out of the service's own go.mod.
package k8s
