package sdkharness

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/util/grpcx"
	"github.com/weir-runner/weir/runner/engine/harness"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// fakePool is an external worker pool whose workers are the test's: each
// opens its control and data streams, hands every instruction to got as
// it arrives, and sends the answers the test puts on answer (each on the
// stream of the worker whose ID its instruction ID starts with).
type fakePool struct {
	fnpb.UnimplementedBeamFnExternalWorkerPoolServer
	got    chan *fnpb.InstructionRequest
	answer chan *fnpb.InstructionResponse
	done   chan struct{}
	// noData: the workers never open a data stream (Beam's TypeScript
	// harness opens it only when it runs its first bundle).
	noData bool
	addr   string // where the pool listens

	mu      sync.Mutex
	answers map[string]chan *fnpb.InstructionResponse // by worker ID
}

// route hands each answer to its worker (instruction IDs are
// "<worker>-<n>"); it ends when the test closes done.
func (p *fakePool) route() {
	for {
		select {
		case resp := <-p.answer:
			id := resp.GetInstructionId()
			p.mu.Lock()
			ch := p.answers[id[:max(strings.LastIndex(id, "-"), 0)]]
			p.mu.Unlock()
			if ch == nil {
				continue
			}
			select {
			case ch <- resp:
			case <-p.done:
				return
			}
		case <-p.done:
			return
		}
	}
}

func (p *fakePool) StartWorker(_ context.Context, req *fnpb.StartWorkerRequest) (*fnpb.StartWorkerResponse, error) {
	conn, err := grpc.NewClient(req.GetControlEndpoint().GetUrl(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	ctx := grpcx.WriteWorkerID(context.Background(), req.GetWorkerId())
	answers := make(chan *fnpb.InstructionResponse)
	p.mu.Lock()
	p.answers[req.GetWorkerId()] = answers
	p.mu.Unlock()
	go func() { // owned by the pool: ends when the test closes done
		defer conn.Close()
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		if !p.noData {
			data, err := fnpb.NewBeamFnDataClient(conn).Data(ctx)
			if err != nil {
				return
			}
			go func() { // drains what weir sends; ends with the stream
				for {
					if _, err := data.Recv(); err != nil {
						return
					}
				}
			}()
		}
		ctrl, err := fnpb.NewBeamFnControlClient(conn).Control(ctx)
		if err != nil {
			return
		}
		go func() { // sends the test's answers; ends with the worker
			for {
				select {
				case resp := <-answers:
					if err := ctrl.Send(resp); err != nil {
						return
					}
				case <-p.done:
					return
				}
			}
		}()
		for {
			req, err := ctrl.Recv()
			if err != nil {
				return
			}
			select {
			case p.got <- req:
			case <-p.done:
				return
			}
		}
	}()
	return &fnpb.StartWorkerResponse{}, nil
}

// startFakePool starts weir's Fn API server and a fakePool, both on
// ports from :0, stopped when the test ends.
func startFakePool(t *testing.T, noData bool) (*Server, *fakePool) {
	t.Helper()
	srv := NewServer(nil)
	g := grpc.NewServer()
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis) // stopped at cleanup
	t.Cleanup(g.Stop)
	srv.SetEndpoint(lis.Addr().String())

	pool := &fakePool{got: make(chan *fnpb.InstructionRequest), answer: make(chan *fnpb.InstructionResponse), done: make(chan struct{}), noData: noData, answers: map[string]chan *fnpb.InstructionResponse{}}
	go pool.route() // ends at cleanup
	pg := grpc.NewServer()
	fnpb.RegisterBeamFnExternalWorkerPoolServer(pg, pool)
	plis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go pg.Serve(plis) // stopped at cleanup
	t.Cleanup(pg.Stop)
	t.Cleanup(func() { close(pool.done) }) // runs first: the workers end before the servers stop
	pool.addr = plis.Addr().String()
	return srv, pool
}

// start starts worker id of srv through the pool, stopped when the test ends.
func (p *fakePool) start(ctx context.Context, t *testing.T, srv *Server, id string) *Worker {
	t.Helper()
	w, err := srv.StartLoopback(ctx, p.addr, id, WorkerOptions{HeartbeatInterval: time.Hour, HeartbeatTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return w
}

// TestFinalizeWaitsForRunningBundles: weir sends FinalizeBundle only when
// no bundle is running on the worker (the Go SDK's harness finalizes
// without the lock its bundle completion takes, which crashed a worker's
// process), and a bundle waits for a finalization under way.
func TestFinalizeWaitsForRunningBundles(t *testing.T) {
	srv, pool := startFakePool(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w := pool.start(ctx, t, srv, "w1")

	bundleDone := make(chan error, 1)
	go func() { _, err := w.ProcessBundle(ctx, harness.BundleSpec{Descriptor: "d"}); bundleDone <- err }()
	first := <-pool.got
	if first.GetProcessBundle() == nil {
		t.Fatalf("first instruction %v, want a bundle", first)
	}
	finDone := make(chan error, 1)
	go func() { finDone <- w.Finalize(ctx, "earlier") }()
	select {
	case req := <-pool.got:
		t.Fatalf("%v sent while a bundle runs", req)
	case <-time.After(200 * time.Millisecond):
	}
	pool.answer <- bundleAnswer(first)
	if err := <-bundleDone; err != nil {
		t.Fatalf("bundle: %v", err)
	}
	fin := <-pool.got
	if fin.GetFinalizeBundle().GetInstructionId() != "earlier" {
		t.Fatalf("after the bundle: %v, want the finalization", fin)
	}
	// A bundle started now waits for the finalization under way.
	go func() { _, err := w.ProcessBundle(ctx, harness.BundleSpec{Descriptor: "d"}); bundleDone <- err }()
	select {
	case req := <-pool.got:
		t.Fatalf("%v sent while a finalization runs", req)
	case <-time.After(200 * time.Millisecond):
	}
	pool.answer <- &fnpb.InstructionResponse{InstructionId: fin.GetInstructionId(), Response: &fnpb.InstructionResponse_FinalizeBundle{FinalizeBundle: &fnpb.FinalizeBundleResponse{}}}
	if err := <-finDone; err != nil {
		t.Fatalf("finalize: %v", err)
	}
	second := <-pool.got
	if second.GetProcessBundle() == nil {
		t.Fatalf("after the finalization: %v, want the bundle", second)
	}
	pool.answer <- bundleAnswer(second)
	if err := <-bundleDone; err != nil {
		t.Fatalf("second bundle: %v", err)
	}
}

// bundleAnswer is a successful answer to bundle instruction req.
func bundleAnswer(req *fnpb.InstructionRequest) *fnpb.InstructionResponse {
	return &fnpb.InstructionResponse{InstructionId: req.GetInstructionId(), Response: &fnpb.InstructionResponse_ProcessBundle{ProcessBundle: &fnpb.ProcessBundleResponse{}}}
}
