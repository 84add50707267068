package sdkharness

import (
	"context"
	"net"
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
// it arrives, and sends the answers the test puts on answer.
type fakePool struct {
	fnpb.UnimplementedBeamFnExternalWorkerPoolServer
	got    chan *fnpb.InstructionRequest
	answer chan *fnpb.InstructionResponse
	done   chan struct{}
}

func (p *fakePool) StartWorker(_ context.Context, req *fnpb.StartWorkerRequest) (*fnpb.StartWorkerResponse, error) {
	conn, err := grpc.NewClient(req.GetControlEndpoint().GetUrl(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	ctx := grpcx.WriteWorkerID(context.Background(), req.GetWorkerId())
	go func() { // owned by the pool: ends when the test closes done
		defer conn.Close()
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
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
		ctrl, err := fnpb.NewBeamFnControlClient(conn).Control(ctx)
		if err != nil {
			return
		}
		go func() { // sends the test's answers; ends with the worker
			for {
				select {
				case resp := <-p.answer:
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

// TestFinalizeWaitsForRunningBundles: weir sends FinalizeBundle only when
// no bundle is running on the worker (the Go SDK's harness finalizes
// without the lock its bundle completion takes, which crashed a worker's
// process), and a bundle waits for a finalization under way.
func TestFinalizeWaitsForRunningBundles(t *testing.T) {
	srv := NewServer(nil)
	g := grpc.NewServer()
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis) // stopped below
	defer g.Stop()
	srv.SetEndpoint(lis.Addr().String())

	pool := &fakePool{got: make(chan *fnpb.InstructionRequest), answer: make(chan *fnpb.InstructionResponse), done: make(chan struct{})}
	defer close(pool.done)
	pg := grpc.NewServer()
	fnpb.RegisterBeamFnExternalWorkerPoolServer(pg, pool)
	plis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go pg.Serve(plis) // stopped below
	defer pg.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := srv.StartLoopback(ctx, plis.Addr().String(), "w1", WorkerOptions{HeartbeatInterval: time.Hour, HeartbeatTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

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
