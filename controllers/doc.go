// Package controllers reconciles Workflows and Brokers into the objects that run them.
package controllers
