//go:build !linux

package main

import (
	"syscall"
	"time"
)

func childAttrs() *syscall.SysProcAttr { return nil }

// selfCPU is not measured off Linux.
func selfCPU() time.Duration { return 0 }
