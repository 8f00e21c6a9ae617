package main

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/sre-instrumentation/storage-api/internal/config"
	"github.com/sre-instrumentation/storage-api/internal/storage/bolt"
)

// checkCommand is `storage-api check [-data-dir DIR]`: the offline scrub of a bolt file
// (bolt.Check). It takes the server's flags and environment, so it finds the file the
// server would open. Exit status 1 when any record or page is bad.
func checkCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := config.Parse(args, getenv, stderr)
	if err != nil {
		return err
	}
	path := filepath.Join(cfg.DataDir, bolt.FileName)
	if _, err := bolt.Check(path, stdout); err != nil {
		return fmt.Errorf("check: %w", err)
	}
	return nil
}
