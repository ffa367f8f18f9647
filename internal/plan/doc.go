// Package plan defines the Plan: the compiled form of a Workflow and the only
// contract between the control plane (render, controllers) and the data plane
// (patchbay-runtime). Its style is the API's own type (style.Style, which
// v1alpha1.Style aliases), so the styles and the questions asked of them
// (IsAsync, HasEvents) have one home; apart from that it imports only the
// standard library, so the sidecar links no Kubernetes types. It also names a
// Workflow's children (ChildName, MaxNameLen) and their Services (ServiceURL).
package plan
