// Command images builds the project's OCI image archives with
// go-containerregistry, for machines and CI without a Docker engine.
package main
