// Package examples holds configurations and client snippets that CI runs,
// so what the README shows cannot drift from what works.
package examples
