// Command weir is the weir job server and its command-line client.
//
//	weir serve [--job_port=8099] [--parallelism=N] [--endpoint_file=PATH]
//	weir jobs [--endpoint=127.0.0.1:8099]
//	weir cancel [--endpoint=127.0.0.1:8099] JOB
//	weir drain [--endpoint=127.0.0.1:8099] JOB
//	weir stop [--endpoint=127.0.0.1:8099] [--target=URL] [--drain] JOB
//	weir checkpoints --checkpoint_dir=URL JOB_NAME
//	weir savepoint [take] [--endpoint=127.0.0.1:8099] [--target=URL] JOB
//	weir savepoint list DIR
//	weir savepoint inspect [--transform=NAME] [--state=ID] [--limit=N] PATH
//	weir savepoint dispose PATH
package main

import (
	"context"
	"fmt"
	"os"
	"time"
)

const usage = `usage: weir <command> [flags]

commands:
  serve    run the job server (Job API, artifacts and Fn API on one port)
  jobs     list the jobs of a running server
  cancel   cancel a job: weir cancel JOB
  drain    drain a job: stop its sources, fire all timers, end DONE: weir drain JOB
  stop     stop a job with a savepoint: weir stop JOB [--savepoint] [--target=URL] [--drain]
  checkpoints  list a job's completed checkpoints: weir checkpoints --checkpoint_dir=URL JOB_NAME
  savepoint    savepoints you own: weir savepoint [take] [--target=URL] JOB | list DIR | inspect [--transform=NAME] [--state=ID] [--limit=N] PATH | dispose PATH

Run 'weir <command> --help' for the flags of a command.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "serve":
		err = serve(args)
	case "jobs":
		err = jobs(args)
	case "cancel":
		err = cancel(args)
	case "drain":
		err = drain(args)
	case "stop":
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		err = stopCmd(ctx, os.Stdout, args)
		cancel()
	case "checkpoints":
		err = checkpoints(args)
	case "savepoint":
		err = savepointCmd(args)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "weir: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "weir %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
