// Package e2e is the cluster e2e tier: it installs the Helm chart into a kwok
// cluster and drives config/samples to Ready. Its tests carry the build tag
// e2e, so only `make test-e2e` runs them.
package e2e
