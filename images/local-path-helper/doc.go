// Command local-path-helper creates and deletes the directories behind the
// local cluster's volumes, as the local-path-provisioner's helper pods.
package main
