package fsm

import (
	"log/slog"
	"os"
)

// defaultOnFatal stops the process: an entry this binary cannot apply would
// otherwise make the replica diverge. It is the only place the package
// touches os.
func defaultOnFatal(log *slog.Logger) func(error) {
	return func(err error) {
		log.Error("cannot apply log entry; stopping to avoid diverging from the cluster (upgrade this binary)", "err", err)
		os.Exit(1)
	}
}
