package fsm

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// Snapshot stream layout (integers big-endian, lengths uvarint):
//
//	"KHFS" magic, uint16 format version, uint64 applied index
//	marker count, then (len, name, len, value) per marker, sorted by name
//	resource count, then (len, stored resource encoding) per resource, sorted by key
//	sha256 of everything before it (detects truncation and corruption)
const (
	snapshotMagic   = "KHFS"
	snapshotVersion = 1
	// maxRecordLen bounds one record so a corrupt length cannot make Restore allocate gigabytes.
	maxRecordLen = 64 << 20
)

// Snapshot is a point-in-time view of the state. Taking it copies pointers
// only; the encoding happens in WriteTo.
type Snapshot struct {
	index     uint64
	markers   map[string]string
	resources []*resource.Resource
}

// Snapshot takes an unchanging view cheaply; the I/O happens in WriteTo.
func (f *FSM) Snapshot() *Snapshot {
	f.mu.RLock()
	defer f.mu.RUnlock()
	st := f.mu.st
	s := &Snapshot{
		index:     f.applied.Load(),
		markers:   make(map[string]string, len(st.markers)),
		resources: make([]*resource.Resource, 0, len(st.byKey)),
	}
	for k, v := range st.markers {
		s.markers[k] = v
	}
	for _, r := range st.byKey {
		s.resources = append(s.resources, r)
	}
	return s
}

// Index is the applied index the snapshot was taken at.
func (s *Snapshot) Index() uint64 { return s.index }

// WriteTo streams the snapshot: one record at a time through a buffer, never
// the whole encoded state in memory.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) {
	if s.resources == nil && s.markers == nil {
		return 0, errors.New("write snapshot: snapshot was released")
	}
	cw := &countingWriter{w: w}
	bw := bufio.NewWriterSize(cw, 256<<10)
	h := sha256.New()
	out := io.MultiWriter(bw, h)
	e := &recordWriter{w: out}

	var hdr [14]byte
	copy(hdr[:4], snapshotMagic)
	binary.BigEndian.PutUint16(hdr[4:6], snapshotVersion)
	binary.BigEndian.PutUint64(hdr[6:14], s.index)
	e.write(hdr[:])
	e.markers(s.markers)
	slices.SortFunc(s.resources, compareResources)
	e.uvarint(uint64(len(s.resources)))
	for _, r := range s.resources {
		if e.err != nil {
			break
		}
		data, err := activeSchema.encodeResource(r)
		if err != nil {
			return cw.n, fmt.Errorf("write snapshot: %w", err)
		}
		e.bytes(data)
	}
	if e.err == nil {
		_, e.err = bw.Write(h.Sum(nil))
	}
	if e.err == nil {
		e.err = bw.Flush()
	}
	if e.err != nil {
		return cw.n, fmt.Errorf("write snapshot: %w", e.err)
	}
	return cw.n, nil
}

// Release drops the snapshot's references.
func (s *Snapshot) Release() {
	s.resources = nil
	s.markers = nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// recordWriter writes length-prefixed fields, remembering the first error.
type recordWriter struct {
	w   io.Writer
	err error
	buf [binary.MaxVarintLen64]byte
}

func (e *recordWriter) write(p []byte) {
	if e.err == nil {
		_, e.err = e.w.Write(p)
	}
}

func (e *recordWriter) uvarint(v uint64) {
	n := binary.PutUvarint(e.buf[:], v)
	e.write(e.buf[:n])
}

func (e *recordWriter) bytes(p []byte) {
	e.uvarint(uint64(len(p)))
	e.write(p)
}

// Restore replaces the state with a snapshot streamed from r, then wakes every
// watcher with Reset. On error the current state is left unchanged.
func (f *FSM) Restore(r io.Reader) error {
	st, index, err := readSnapshot(r)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	f.writeMu.Lock()
	defer f.writeMu.Unlock()
	f.mu.Lock()
	f.mu.st = st
	f.applied.Store(index)
	f.mu.Unlock()
	f.resetWatchers()
	f.advance(index)
	f.log.Info("restored snapshot", "index", index, "resources", len(st.byKey))
	return nil
}

// hashingReader feeds everything read through it into a hash.
type hashingReader struct {
	r *bufio.Reader
	h hash.Hash
}

func (h *hashingReader) ReadByte() (byte, error) {
	b, err := h.r.ReadByte()
	if err == nil {
		h.h.Write([]byte{b})
	}
	return b, err
}

func (h *hashingReader) full(p []byte) error {
	if _, err := io.ReadFull(h.r, p); err != nil {
		return err
	}
	h.h.Write(p)
	return nil
}

func (h *hashingReader) uvarint() (uint64, error) { return binary.ReadUvarint(h) }

func (h *hashingReader) record(buf []byte) ([]byte, error) {
	n, err := h.uvarint()
	if err != nil {
		return nil, err
	}
	if n > maxRecordLen {
		return nil, fmt.Errorf("record of %d bytes exceeds the %d-byte limit", n, maxRecordLen)
	}
	if uint64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	return buf, h.full(buf)
}

func readSnapshot(r io.Reader) (*state, uint64, error) {
	hr := &hashingReader{r: bufio.NewReaderSize(r, 256<<10), h: sha256.New()}
	var hdr [14]byte
	if err := hr.full(hdr[:]); err != nil {
		return nil, 0, fmt.Errorf("header: %w", unexpectedEOF(err))
	}
	if string(hdr[:4]) != snapshotMagic {
		return nil, 0, fmt.Errorf("header: not a snapshot (magic %q)", hdr[:4])
	}
	if v := binary.BigEndian.Uint16(hdr[4:6]); v != snapshotVersion {
		return nil, 0, fmt.Errorf("header: snapshot format version %d, this binary reads %d", v, snapshotVersion)
	}
	index := binary.BigEndian.Uint64(hdr[6:14])
	st := newState()

	nMarkers, err := hr.uvarint()
	if err != nil {
		return nil, 0, fmt.Errorf("markers: %w", unexpectedEOF(err))
	}
	for i := uint64(0); i < nMarkers; i++ {
		k, err := hr.record(nil)
		if err != nil {
			return nil, 0, fmt.Errorf("marker %d: %w", i, unexpectedEOF(err))
		}
		v, err := hr.record(nil)
		if err != nil {
			return nil, 0, fmt.Errorf("marker %d: %w", i, unexpectedEOF(err))
		}
		st.markers[string(k)] = string(v)
	}

	nRes, err := hr.uvarint()
	if err != nil {
		return nil, 0, fmt.Errorf("resource count: %w", unexpectedEOF(err))
	}
	if err := decodeResources(hr, nRes, st); err != nil {
		return nil, 0, err
	}

	want := hr.h.Sum(nil)
	var got [sha256.Size]byte
	if _, err := io.ReadFull(hr.r, got[:]); err != nil {
		return nil, 0, fmt.Errorf("checksum: %w", unexpectedEOF(err))
	}
	if !bytes.Equal(want, got[:]) {
		return nil, 0, errors.New("checksum mismatch: snapshot is corrupt")
	}
	if _, err := hr.r.ReadByte(); err != io.EOF {
		return nil, 0, errors.New("trailing data after checksum")
	}
	return st, index, nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// markers writes the cluster markers sorted by name, as both the snapshot
// format and the digest encode them.
func (e *recordWriter) markers(m map[string]string) {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	e.uvarint(uint64(len(names)))
	for _, k := range names {
		e.bytes([]byte(k))
		e.bytes([]byte(m[k]))
	}
}
