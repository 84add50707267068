package sdkharness

import (
	"context"
	"strings"
	"testing"
	"time"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/util/grpcx"
	"github.com/weir-runner/weir/runner/engine/harness"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// tsDescriptor is a descriptor of a TypeScript SDK environment (no Go
// capabilities) under id; payload tells two such descriptors apart.
func tsDescriptor(id, payload string) *fnpb.ProcessBundleDescriptor {
	return &fnpb.ProcessBundleDescriptor{
		Id: id,
		Transforms: map[string]*pipepb.PTransform{"t": {
			UniqueName:    "t",
			Spec:          &pipepb.FunctionSpec{Urn: "beam:transform:pardo:v1", Payload: []byte(payload)},
			EnvironmentId: "ts",
		}},
		Environments: map[string]*pipepb.Environment{"ts": {Urn: "beam:env:external:v1", Capabilities: []string{"beam:coder:bytes:v1"}}},
	}
}

// TestRegisterRefused: a harness that refuses the register instruction
// is no error; it is to fetch its descriptors itself.
func TestRegisterRefused(t *testing.T) {
	srv, pool := startFakePool(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w := pool.start(ctx, t, srv, "w1")
	d := tsDescriptor("s1", "go")
	d.Environments["ts"].Capabilities = []string{"beam:version:sdk_base:go:apache/beam_go_sdk:2.77.0"}
	regErr := make(chan error, 1)
	go func() { regErr <- w.Register(ctx, d) }()
	req := <-pool.got
	if ds := req.GetRegister().GetProcessBundleDescriptor(); len(ds) != 1 || ds[0].GetId() != "s1" {
		t.Fatalf("instruction %v, want a register of s1", req)
	}
	pool.answer <- &fnpb.InstructionResponse{InstructionId: req.GetInstructionId(), Error: "Unknown instruction type: register"}
	if err := <-regErr; err != nil {
		t.Fatalf("register refused as the TypeScript harness does: %v, want no error", err)
	}
	if got, err := srv.GetProcessBundleDescriptor(ctx, &fnpb.GetProcessBundleDescriptorRequest{ProcessBundleDescriptorId: "s1"}); err != nil || !proto.Equal(got, d) {
		t.Errorf("descriptor s1 after a refused register: %v, %v", got, err)
	}
}

// TestForeignHarnessDescriptors: a harness of an SDK other than Go is sent
// no register instruction (Beam's TypeScript harness refuses it, and dies
// of one larger than 4 MiB); it fetches the descriptor a bundle names,
// without worker_id metadata, by that ID alone. Two workers of jobs whose
// plans share a stage ID get the descriptor under IDs of their own, so the
// ID stays unique; an ID held by two workers with different descriptors is
// refused by name, and one they hold alike is served.
func TestForeignHarnessDescriptors(t *testing.T) {
	srv, pool := startFakePool(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(srv.Endpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctrl := fnpb.NewBeamFnControlClient(conn)
	fetch := func(ctx context.Context, id string) (*fnpb.ProcessBundleDescriptor, error) {
		return ctrl.GetProcessBundleDescriptor(ctx, &fnpb.GetProcessBundleDescriptorRequest{ProcessBundleDescriptorId: id})
	}

	var named []string // IDs the bundles named for "s1"
	for _, id := range []string{"job1-w1", "job2-w1"} {
		w := pool.start(ctx, t, srv, id)
		if err := w.Register(ctx, tsDescriptor("s1", id)); err != nil {
			t.Fatalf("register: %v", err)
		}
		bundleDone := make(chan error, 1)
		go func() { _, err := w.ProcessBundle(ctx, harness.BundleSpec{Descriptor: "s1"}); bundleDone <- err }()
		req := <-pool.got // the first instruction: no register came before it
		got := req.GetProcessBundle().GetProcessBundleDescriptorId()
		if req.GetProcessBundle() == nil || got == "s1" {
			t.Fatalf("worker %s: first instruction %v, want a bundle naming s1 under an ID of its own", id, req)
		}
		named = append(named, got)
		fetched, err := fetch(ctx, got)
		if err != nil {
			t.Fatalf("GetProcessBundleDescriptor(%q) without worker_id: %v", got, err)
		}
		if fetched.GetId() != got || string(fetched.GetTransforms()["t"].GetSpec().GetPayload()) != id {
			t.Errorf("fetched %v, want worker %s's s1 under ID %q", fetched, id, got)
		}
		pool.answer <- bundleAnswer(req)
		if err := <-bundleDone; err != nil {
			t.Fatalf("bundle: %v", err)
		}
	}
	if named[0] == named[1] {
		t.Errorf("both workers' bundles named descriptor %q", named[0])
	}

	// By engine ID "s1", held by both workers with different contents.
	_, err = fetch(ctx, "s1")
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), `"s1"`) || !strings.Contains(err.Error(), "job1-w1") {
		t.Errorf("ambiguous ID without worker_id: %v, want FailedPrecondition naming s1 and the workers", err)
	}
	// With worker_id, the worker's own.
	d, err := fetch(grpcx.WriteWorkerID(ctx, "job2-w1"), "s1")
	if err != nil || string(d.GetTransforms()["t"].GetSpec().GetPayload()) != "job2-w1" {
		t.Errorf("s1 with worker_id job2-w1: %v, %v", d, err)
	}
	if _, err := fetch(ctx, "nope"); status.Code(err) != codes.NotFound {
		t.Errorf("unknown ID without worker_id: %v, want NotFound", err)
	}
}

// TestDescriptorByIDHeldAlike: an ID two workers hold with equal
// descriptors is served without worker_id.
func TestDescriptorByIDHeldAlike(t *testing.T) {
	srv := NewServer(nil)
	for _, id := range []string{"a", "b"} {
		w := newWorker(srv, id, nil)
		w.descriptors["d"] = tsDescriptor("d", "same")
		srv.addWorker(w)
	}
	d, err := srv.descriptorByID(context.Background(), "d")
	if err != nil || d.GetId() != "d" {
		t.Errorf("descriptorByID = %v, %v", d, err)
	}
}

// TestBundleFailsAtOnce: a harness that answers a bundle with an error
// before it has opened its data stream (Beam's TypeScript harness opens it
// only for its first bundle) fails the bundle at once with the harness's
// message, not when some watchdog notices minutes later.
func TestBundleFailsAtOnce(t *testing.T) {
	srv, pool := startFakePool(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w := pool.start(ctx, t, srv, "w1")

	start := time.Now()
	bundleDone := make(chan error, 1)
	spec := harness.BundleSpec{Descriptor: "d", Inputs: map[string][][]byte{"src": {[]byte("x")}}, Outputs: []string{"sink"}}
	go func() { _, err := w.ProcessBundle(ctx, spec); bundleDone <- err }()
	req := <-pool.got
	if req.GetProcessBundle() == nil {
		t.Fatalf("instruction %v, want a bundle", req)
	}
	const msg = "TypeError: cannot read properties of undefined (reading 'coder')"
	pool.answer <- &fnpb.InstructionResponse{InstructionId: req.GetInstructionId(), Error: msg}
	select {
	case err := <-bundleDone:
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Fatalf("bundle error %v, want the worker's %q", err, msg)
		}
		// Generous: before the fix the bundle failed after about two minutes.
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("bundle failed after %v, want within seconds", d)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("bundle answered with an error still running after 20s")
	}
}
