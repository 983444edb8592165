// Package deptest holds tests for the house rules on imports and package
// documentation. It has no non-test code.
package deptest
