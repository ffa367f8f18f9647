// Command pause is a pod sandbox's first process: it only holds the pod's
// namespaces open until the runtime stops it, so that clusters load it from
// an archive instead of pulling registry.k8s.io/pause.
package main
