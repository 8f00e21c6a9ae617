// Package k8s holds the offline checks of the Kubernetes deployment: the Helm chart in
// deploy/helm/storage-api is linted and rendered with the pinned helm (.tools/bin/helm), and
// every rendered object is decoded strictly into the typed Kubernetes and prometheus-operator
// API structs, so a misspelt field or a wrong type fails. It is a separate module so those
// heavy dependencies stay out of the service's own go.mod.
package k8s
