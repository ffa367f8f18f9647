// Package plan defines the Plan: the compiled form of a Workflow and the only
// contract between the control plane (render, controllers) and the data plane
// (patchbay-runtime). It has no Kubernetes dependencies so that the runtime stays small.
package plan
