// Package topology compiles a Workflow into the Plan that the control plane and the data plane share.
package topology
