// Package multihost tests a Tandem domain spread over several simulated machines (network namespaces).
package multihost
