package otlp

import (
	"bytes"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// fullDecode is the check the walk replaced: the protobuf runtime's
// decode with the same recursion limit.
func fullDecode(b []byte) error {
	return proto.UnmarshalOptions{RecursionLimit: maxDepth, DiscardUnknown: true}.Unmarshal(b, &colmetrics.ExportMetricsServiceRequest{})
}

// nested is a request whose resource carries an attribute value nested
// so that its deepest message is depth deep, counting the request as 1
// (depth at least 5).
func nested(depth int) []byte {
	// request > ResourceMetrics > Resource > KeyValue > AnyValue (5), then
	// ArrayValue > AnyValue > ArrayValue ... down to depth, built from the
	// deepest up: a level's content wrapped in its parent's field.
	var b []byte
	for level := depth; level > 5; level-- {
		num := protowire.Number(5) // an ArrayValue in AnyValue.array_value
		if (level-5)%2 == 0 {
			num = 1 // an AnyValue in ArrayValue.values
		}
		b = protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), b)
	}
	for _, num := range []protowire.Number{2, 1, 1, 1} { // KeyValue.value, Resource.attributes, ResourceMetrics.resource, request.resource_metrics
		b = protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), b)
	}
	return b
}

// walkCorpus is valid and invalid requests near the walk's edges.
func walkCorpus() [][]byte {
	histogram := func() []byte {
		md := pmetric.NewMetrics()
		ms := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics()
		h := ms.AppendEmpty()
		h.SetName("h")
		hp := h.SetEmptyHistogram().DataPoints().AppendEmpty()
		hp.BucketCounts().FromRaw([]uint64{1, 2, 3})
		hp.ExplicitBounds().FromRaw([]float64{0.1, 1})
		hp.SetSum(3)
		hp.Exemplars().AppendEmpty().SetTraceID(pcommon.TraceID{1})
		e := ms.AppendEmpty()
		e.SetName("e")
		ep := e.SetEmptyExponentialHistogram().DataPoints().AppendEmpty()
		ep.SetScale(-3)
		ep.Positive().BucketCounts().FromRaw([]uint64{1, 300, 70000})
		s := ms.AppendEmpty()
		s.SetName("s")
		q := s.SetEmptySummary().DataPoints().AppendEmpty().QuantileValues().AppendEmpty()
		q.SetQuantile(0.5)
		ss := ms.AppendEmpty()
		ss.SetEmptySum().DataPoints().AppendEmpty().SetIntValue(-4)
		ss.Metadata().PutEmptySlice("l").AppendEmpty().SetEmptyBytes().FromRaw([]byte{0xff})
		b, _ := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
		return b
	}
	tag := func(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }
	return [][]byte{
		gauge(3), histogram(), nil, nested(31), nested(32), nested(33), nested(34), nested(40),
		{0x0a, 0x02, 0x0a, 0x00},
		append(tag(1, protowire.BytesType), 0x05, 0x0a),                             // truncated
		tag(1, protowire.EndGroupType),                                              // a stray end of group
		append(tag(9, protowire.StartGroupType), tag(9, protowire.EndGroupType)...), // an unknown group
		append(tag(9, protowire.StartGroupType), tag(8, protowire.EndGroupType)...), // mismatched
		append(tag(1, protowire.VarintType), 0x01),                                  // a message field sent as a varint
		append(tag(1, 6), 0),                                                        // a reserved wire type
		protowire.AppendVarint(nil, uint64(protowire.MaxValidNumber+1)<<3),          // a field number too large
		{0x00}, // field number 0
		append(tag(7, protowire.Fixed64Type), 1, 2),                              // a short fixed64
		{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // an overlong varint
	}
}

// TestWalkAgreesWithProtobuf: on the corpus and on random mutations of
// it, the walk accepts exactly what the protobuf runtime accepts
// (FuzzWalkAgreesWithProtobuf explores further), and rejects a request
// nested deeper than maxDepth as too deep.
func TestWalkAgreesWithProtobuf(t *testing.T) {
	for d := 29; d <= 36; d++ {
		_, err := validate(nested(d))
		if want := d > maxDepth; (err == errTooDeep) != want || (fullDecode(nested(d)) != nil) != want {
			t.Fatalf("nested %d deep: walk %v, runtime %v", d, err, fullDecode(nested(d)))
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i, seed := range walkCorpus() {
		agree(t, seed)
		for range 2000 {
			b := bytes.Clone(seed)
			for range 1 + rng.IntN(3) {
				switch op := rng.IntN(4); {
				case len(b) == 0:
					b = append(b, byte(rng.Uint32()))
				case op == 0:
					b[rng.IntN(len(b))] = byte(rng.Uint32())
				case op == 1:
					b = b[:rng.IntN(len(b))]
				case op == 2:
					at := rng.IntN(len(b))
					b = append(b[:at], append([]byte{byte(rng.Uint32())}, b[at:]...)...)
				default:
					b[rng.IntN(len(b))] ^= 0x80
				}
			}
			if t.Failed() {
				t.Fatalf("corpus entry %d", i)
			}
			agree(t, b)
		}
	}
}

func agree(t *testing.T, b []byte) {
	t.Helper()
	_, werr := validate(b)
	if perr := fullDecode(b); (werr == nil) != (perr == nil) {
		t.Errorf("%x: walk says %v, the protobuf runtime %v", b, werr, perr)
	}
}

// FuzzWalkAgreesWithProtobuf: the walk and the protobuf runtime's decode
// agree on every input.
func FuzzWalkAgreesWithProtobuf(f *testing.F) {
	for _, b := range walkCorpus() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { agree(t, b) })
}

// TestShapeCoversTheDescriptor: every field of the request's message
// types is known to the walk with its wire kind (a map or group field
// appearing in a new OTLP version would be skipped as unknown, which
// the runtime does not do).
func TestShapeCoversTheDescriptor(t *testing.T) {
	seen := map[protoreflect.FullName]bool{}
	var check func(md protoreflect.MessageDescriptor, s *shape)
	check = func(md protoreflect.MessageDescriptor, s *shape) {
		if seen[md.FullName()] {
			return
		}
		seen[md.FullName()] = true
		fds := md.Fields()
		for i := range fds.Len() {
			fd := fds.Get(i)
			if f := s.fields[fd.Number()]; f.kind == kindUnknown || fd.IsMap() || fd.Kind() == protoreflect.GroupKind {
				t.Errorf("%s: field %s (%v) is not walked", md.FullName(), fd.Name(), fd.Kind())
			} else if f.msg != nil {
				check(fd.Message(), f.msg)
			}
		}
	}
	check((&colmetrics.ExportMetricsServiceRequest{}).ProtoReflect().Descriptor(), request)
	if len(seen) < 20 {
		t.Fatalf("only %d message types", len(seen))
	}
}

// decodedBytes is the heap pdata allocates decoding b.
func decodedBytes(t *testing.T, b []byte) int64 {
	t.Helper()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	req := pmetricotlp.NewExportRequest()
	err := req.UnmarshalProto(b)
	runtime.ReadMemStats(&m1)
	if err != nil {
		t.Fatalf("pdata refuses the shape: %v", err)
	}
	runtime.KeepAlive(req)
	return int64(m1.TotalAlloc - m0.TotalAlloc)
}

// costShapes is one request per repeated message field of the request's
// types (n empty elements, each with its singular message fields set,
// where one is first reachable), a request of packed scalars, and the
// benchmark's realistic export.
func costShapes(n int) map[string][]byte {
	// path[s] is how to wrap one instance of s into a request: the field
	// numbers from the request down.
	type step struct {
		s    *shape
		path []protowire.Number
	}
	paths := map[*shape][]protowire.Number{request: nil}
	queue := []step{{request, nil}}
	var order []*shape
	for len(queue) > 0 {
		st := queue[0]
		queue = queue[1:]
		order = append(order, st.s)
		for num, f := range st.s.fields {
			if f.msg == nil {
				continue
			}
			if _, ok := paths[f.msg]; !ok {
				p := append(append([]protowire.Number(nil), st.path...), protowire.Number(num))
				paths[f.msg] = p
				queue = append(queue, step{f.msg, p})
			}
		}
	}
	wrap := func(path []protowire.Number, inner []byte) []byte {
		for i := len(path) - 1; i >= 0; i-- {
			inner = protowire.AppendBytes(protowire.AppendTag(nil, path[i], protowire.BytesType), inner)
		}
		return inner
	}
	// full is one instance of s with every singular message field present
	// and empty (a oneof's last is kept; pdata allocates each).
	full := func(s *shape) []byte {
		var b []byte
		for num, f := range s.fields {
			if f.msg != nil && !f.list {
				b = protowire.AppendBytes(protowire.AppendTag(b, protowire.Number(num), protowire.BytesType), nil)
			}
		}
		return b
	}
	out := map[string][]byte{}
	for _, s := range order {
		for num, f := range s.fields {
			if f.msg == nil || !f.list {
				continue
			}
			var elems []byte
			for range n {
				elems = protowire.AppendBytes(protowire.AppendTag(elems, protowire.Number(num), protowire.BytesType), full(f.msg))
			}
			out[string(s.name)+"."+strconv.Itoa(num)] = wrap(paths[s], elems)
		}
	}
	// Scalars, strings and singular messages repeated n times in one
	// message of the named type.
	at := func(name protoreflect.FullName) []protowire.Number {
		for sh, p := range paths {
			if sh.name == name {
				return p
			}
		}
		panic(name)
	}
	repeat := func(item []byte) []byte { return bytes.Repeat(item, n) }
	tag := func(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }
	const v1 = "opentelemetry.proto.metrics.v1."
	out["packed varints"] = wrap(at(v1+"ExponentialHistogramDataPoint.Buckets"), protowire.AppendBytes(tag(2, protowire.BytesType), make([]byte, n)))
	out["unpacked varints"] = wrap(at(v1+"ExponentialHistogramDataPoint.Buckets"), repeat(append(tag(2, protowire.VarintType), 0)))
	out["packed fixed64"] = wrap(at(v1+"HistogramDataPoint"), protowire.AppendBytes(tag(6, protowire.BytesType), make([]byte, 8*n)))
	out["repeated strings"] = wrap(at("opentelemetry.proto.common.v1.EntityRef"), repeat(append(tag(3, protowire.BytesType), 0)))
	out["oneof strings"] = wrap(at("opentelemetry.proto.common.v1.AnyValue"), repeat(append(tag(1, protowire.BytesType), 0)))
	out["oneof ints"] = wrap(at("opentelemetry.proto.common.v1.AnyValue"), repeat(append(tag(3, protowire.VarintType), 0)))
	out["oneof doubles"] = wrap(at(v1+"NumberDataPoint"), repeat(append(tag(4, protowire.Fixed64Type), make([]byte, 8)...)))
	out["singular messages"] = wrap(at(v1+"Metric"), repeat(append(tag(5, protowire.BytesType), 0)))
	out["unknown fields"] = wrap(at(v1+"Metric"), repeat(append(tag(99, protowire.BytesType), 0)))
	out["realistic"] = gauge(n)
	return out
}

// TestDecodeCostBoundsPdata: the walk's estimate is at least what pdata
// allocates decoding each shape of request, the small-element floods
// included (the worst case the budget exists for), and within 8x of it
// for a realistic export, so the budget does not starve real traffic.
func TestDecodeCostBoundsPdata(t *testing.T) {
	for _, n := range []int{300, 100_000} {
		for name, b := range costShapes(n) {
			t.Run(strconv.Itoa(n)+"/"+name, func(t *testing.T) { costBound(t, name, b) })
		}
	}
}

// costBound checks the walk's estimate for one shape against pdata.
func costBound(t *testing.T, name string, b []byte) {
	est, err := validate(b)
	if err != nil {
		t.Fatalf("the walk refuses the shape: %v", err)
	}
	got := decodedBytes(t, b)
	t.Logf("%d bytes on the wire, %d decoded (%.0fx), estimated %d (%.2fx the decoded)", len(b), got, float64(got)/float64(len(b)), est, float64(est)/float64(got))
	if est < got {
		t.Errorf("the estimate %d is under the %d bytes pdata allocated", est, got)
	}
	if name == "realistic" && est > 8*got {
		t.Errorf("the estimate %d is over 8x the %d bytes pdata allocated", est, got)
	}
}
