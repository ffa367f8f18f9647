// Package resilience turns a plan.Policy into failsafe-go policies for one hop and
// holds the status semantics every hop shares (docs/step-contract.md).
package resilience
