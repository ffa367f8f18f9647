// Package chart tests what the Helm chart in charts/patchbay renders.
package chart
