// Command rttbench measures the round trip of one Fn API state request
// over gRPC on this machine: TCP loopback, a unix socket, and an in-memory
// pipe, with one or several streams at once.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
)

type echo struct {
	fnpb.UnimplementedBeamFnStateServer
}

func (echo) State(s fnpb.BeamFnState_StateServer) error {
	for {
		req, err := s.Recv()
		if err != nil {
			return nil
		}
		if err := s.Send(&fnpb.StateResponse{Id: req.GetId(), Response: &fnpb.StateResponse_Get{Get: &fnpb.StateGetResponse{Data: []byte("0123456789")}}}); err != nil {
			return err
		}
	}
}

func main() {
	n := flag.Int("n", 20000, "round trips per stream")
	streams := flag.Int("streams", 1, "concurrent streams")
	flag.Parse()
	dir, _ := os.MkdirTemp("", "rtt")
	defer os.RemoveAll(dir)
	buf := bufconn.Listen(1 << 20)
	for _, c := range []struct {
		name   string
		listen func() (net.Listener, error)
		target func(net.Listener) string
		opts   []grpc.DialOption
	}{
		{"tcp", func() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }, func(l net.Listener) string { return l.Addr().String() }, nil},
		{"unix", func() (net.Listener, error) { return net.Listen("unix", filepath.Join(dir, "s")) }, func(l net.Listener) string { return "unix://" + l.Addr().String() }, nil},
		{"bufconn", func() (net.Listener, error) { return buf, nil }, func(net.Listener) string { return "passthrough:///buf" },
			[]grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return buf.DialContext(ctx) })}},
	} {
		lis, err := c.listen()
		if err != nil {
			fmt.Println(c.name, err)
			continue
		}
		srv := grpc.NewServer()
		fnpb.RegisterBeamFnStateServer(srv, echo{})
		go srv.Serve(lis)
		cc, err := grpc.NewClient(c.target(lis), append(c.opts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
		if err != nil {
			fmt.Println(c.name, err)
			continue
		}
		var wg sync.WaitGroup
		start := time.Now()
		for range *streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, err := fnpb.NewBeamFnStateClient(cc).State(context.Background())
				if err != nil {
					fmt.Println(err)
					return
				}
				req := &fnpb.StateRequest{Id: "r1", InstructionId: "b1", Request: &fnpb.StateRequest_Get{Get: &fnpb.StateGetRequest{}}}
				for range *n {
					if err := st.Send(req); err != nil {
						fmt.Println(err)
						return
					}
					if _, err := st.Recv(); err != nil {
						fmt.Println(err)
						return
					}
				}
				st.CloseSend()
			}()
		}
		wg.Wait()
		el := time.Since(start)
		fmt.Printf("%-8s streams=%d  %.1f µs per round trip, %.0f round trips/s in all\n", c.name, *streams, float64(el.Microseconds())/float64(*n), float64(*n**streams)/el.Seconds())
		cc.Close()
		srv.Stop()
	}
}
