// Command configtable prints the README's configuration table as the
// settings table in package app renders it, or with -w rewrites the table
// in a README in place. It exists so the README never has to be edited by
// hand when a setting changes: run `go generate ./app` (or
// `go run ./app/configtable` to see the table).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/salesos/salesos/app"
)

func main() {
	write := flag.String("w", "", "rewrite the configuration table in this markdown file instead of printing it")
	flag.Parse()
	if *write == "" {
		fmt.Print(app.ConfigTable())
		return
	}
	doc, err := os.ReadFile(*write)
	if err != nil {
		fmt.Fprintln(os.Stderr, "configtable:", err)
		os.Exit(1)
	}
	out, old, ok := app.SpliceConfigTable(string(doc))
	if !ok {
		fmt.Fprintf(os.Stderr, "configtable: %s has no table under %q\n", *write, "## Configuration")
		os.Exit(1)
	}
	if old == app.ConfigTable() {
		return
	}
	if err := os.WriteFile(*write, []byte(out), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "configtable:", err)
		os.Exit(1)
	}
}
