package fsm

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// Log entry layout (all integers big-endian):
//
//	byte 0     envelopeMagic
//	byte 1     envelope version (1)
//	bytes 2-3  CommandType
//	bytes 4-   payload, encoded per command type; every payload carries its
//	           own payload version ("v") so a newer binary still decodes
//	           entries written by every older one.
//
// A wrong magic byte is garbage (ErrMalformed). A valid magic with an
// envelope version, command type or payload version this binary does not
// know is ErrUnsupported: the entry came from a newer binary and skipping it
// would make this replica diverge.
const (
	envelopeMagic     byte = 0xC7
	envelopeVersion   byte = 1
	envelopeHeaderLen      = 4

	putPayloadVersion    = 1
	deletePayloadVersion = 1
	ensurePayloadVersion = 1
)

// ErrUnsupported marks an entry written by a newer binary (unknown envelope
// version, command type or payload version). Apply treats it as fatal.
var ErrUnsupported = errors.New("log entry needs a newer binary")

// commandInfo is one row of the command table: adding a command is one row.
type commandInfo struct {
	name        string
	minProtocol int
	encode      func(c Command) ([]byte, error)
	decode      func(payload []byte, c *Command) error
}

var commandTable = map[CommandType]commandInfo{
	CmdPut:               {name: "put", minProtocol: 1, encode: encodePut, decode: decodePut},
	CmdDelete:            {name: "delete", minProtocol: 1, encode: encodeDelete, decode: decodeDelete},
	CmdEnsureDefaultMesh: {name: "ensure-default-mesh", minProtocol: 1, encode: encodeEnsure, decode: decodeEnsure},
	CmdInsights:          {name: "insights", minProtocol: 2, encode: encodeInsights, decode: decodeInsights},
	CmdDeregister:        {name: "deregister", minProtocol: 2, encode: encodeDeregister, decode: decodeDeregister},
}

// MinProtocol is the protocol version that introduced a command type. An
// unknown type reports ProtocolVersion+1: no replica of this binary may
// accept it.
func (t CommandType) MinProtocol() int {
	if info, ok := commandTable[t]; ok {
		return info.minProtocol
	}
	return ProtocolVersion + 1
}

func (t CommandType) String() string {
	if info, ok := commandTable[t]; ok {
		return info.name
	}
	return fmt.Sprintf("command-type-%d", uint16(t))
}

// Encode serialises a command with the current envelope version.
func Encode(c Command) ([]byte, error) {
	info, ok := commandTable[c.Type]
	if !ok {
		return nil, fmt.Errorf("encode command: unknown command type %d", uint16(c.Type))
	}
	if err := checkTime(c.Time); err != nil {
		return nil, fmt.Errorf("encode %s command: %w", info.name, err)
	}
	payload, err := info.encode(c)
	if err != nil {
		return nil, fmt.Errorf("encode %s command: %w", info.name, err)
	}
	out := make([]byte, envelopeHeaderLen, envelopeHeaderLen+len(payload))
	out[0] = envelopeMagic
	out[1] = envelopeVersion
	binary.BigEndian.PutUint16(out[2:4], uint16(c.Type))
	return append(out, payload...), nil
}

// Decode parses a log entry. Errors wrap ErrMalformed (garbage, a bad
// payload) or ErrUnsupported (written by a newer binary).
func Decode(data []byte) (Command, error) {
	if len(data) < envelopeHeaderLen {
		return Command{}, fmt.Errorf("%w: %d bytes, shorter than the %d-byte envelope", ErrMalformed, len(data), envelopeHeaderLen)
	}
	if data[0] != envelopeMagic {
		return Command{}, fmt.Errorf("%w: bad magic byte 0x%02x", ErrMalformed, data[0])
	}
	switch v := data[1]; {
	case v == 0:
		return Command{}, fmt.Errorf("%w: envelope version 0", ErrMalformed)
	case v > envelopeVersion:
		return Command{}, fmt.Errorf("%w: envelope version %d (this binary knows up to %d)", ErrUnsupported, v, envelopeVersion)
	}
	t := CommandType(binary.BigEndian.Uint16(data[2:4]))
	if t == 0 {
		return Command{}, fmt.Errorf("%w: command type 0", ErrMalformed)
	}
	info, ok := commandTable[t]
	if !ok {
		return Command{}, fmt.Errorf("%w: command type %d (protocol %d knows %d..%d)", ErrUnsupported, uint16(t), ProtocolVersion, CmdPut, CmdDeregister)
	}
	c := Command{Type: t}
	if err := info.decode(data[envelopeHeaderLen:], &c); err != nil {
		if errors.Is(err, ErrUnsupported) {
			return Command{}, fmt.Errorf("%s command: %w", info.name, err)
		}
		return Command{}, fmt.Errorf("%w: %s command: %w", ErrMalformed, info.name, err)
	}
	if err := checkTime(c.Time); err != nil {
		return Command{}, fmt.Errorf("%w: %s command: %w", ErrMalformed, info.name, err)
	}
	return c, nil
}

// Check is the cheap part of Decode: the envelope, the command type and,
// for a put, the payload version, but not the resource. A replica that
// proposes bytes another replica encoded calls it to refuse what this binary
// could not apply (ErrUnsupported: written by a newer binary) before it
// enters the log; the rest of a malformed payload is a deterministic
// rejection (Result.Err) when applied. Other command types are decoded whole.
func Check(data []byte) (CommandType, error) {
	if len(data) < envelopeHeaderLen || data[0] != envelopeMagic || data[1] != envelopeVersion ||
		CommandType(binary.BigEndian.Uint16(data[2:4])) != CmdPut {
		c, err := Decode(data)
		return c.Type, err
	}
	payload := data[envelopeHeaderLen:]
	n, w := binary.Uvarint(payload)
	if w <= 0 || n > uint64(len(payload)-w) {
		return 0, fmt.Errorf("%w: put command: put: bad header length", ErrMalformed)
	}
	var peek struct {
		V int `json:"v"`
	}
	if err := json.Unmarshal(payload[w:w+int(n)], &peek); err != nil {
		return 0, fmt.Errorf("%w: put command: put header: %w", ErrMalformed, err)
	}
	if err := checkPayloadVersion(peek.V, putPayloadVersion); err != nil {
		if errors.Is(err, ErrUnsupported) {
			return 0, fmt.Errorf("put command: %w", err)
		}
		return 0, fmt.Errorf("%w: put command: %w", ErrMalformed, err)
	}
	return CmdPut, nil
}

// checkTime rejects times that cannot round-trip through RFC 3339 (and so
// through snapshots and the API).
func checkTime(t time.Time) error {
	if y := t.UTC().Year(); y < 0 || y > 9999 {
		return fmt.Errorf("time: year %d outside [0,9999]", y)
	}
	return nil
}

// checkPayloadVersion maps a payload version to nil, ErrMalformed or ErrUnsupported.
func checkPayloadVersion(v, known int) error {
	switch {
	case v <= 0:
		return fmt.Errorf("payload version %d: missing or invalid", v)
	case v > known:
		return fmt.Errorf("%w: payload version %d (this binary knows up to %d)", ErrUnsupported, v, known)
	}
	return nil
}

// Put payload: uvarint header length, JSON header, then the stored encoding
// of the resource (whose Version and times the state machine ignores).
type putHeaderV1 struct {
	V         int       `json:"v"`
	Time      time.Time `json:"time"`
	IfVersion *uint64   `json:"ifVersion,omitempty"`
}

func encodePut(c Command) ([]byte, error) {
	if c.Put == nil || c.Put.Resource == nil {
		return nil, errors.New("put: missing resource")
	}
	hdr, err := json.Marshal(putHeaderV1{V: putPayloadVersion, Time: c.Time.UTC(), IfVersion: c.Put.IfVersion})
	if err != nil {
		return nil, err
	}
	res, err := activeSchema.encodeResource(c.Put.Resource)
	if err != nil {
		return nil, err
	}
	out := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(hdr)+len(res)), uint64(len(hdr)))
	out = append(out, hdr...)
	return append(out, res...), nil
}

func decodePut(payload []byte, c *Command) error {
	n, w := binary.Uvarint(payload)
	if w <= 0 || n > uint64(len(payload)-w) {
		return errors.New("put: bad header length")
	}
	hdrBytes, resBytes := payload[w:w+int(n)], payload[w+int(n):]
	// Peek at the version first so a newer header with new fields is
	// reported as unsupported rather than as unknown fields.
	var peek struct {
		V int `json:"v"`
	}
	if err := json.Unmarshal(hdrBytes, &peek); err != nil {
		return fmt.Errorf("put header: %w", err)
	}
	if err := checkPayloadVersion(peek.V, putPayloadVersion); err != nil {
		return err
	}
	var hdr putHeaderV1
	if err := strictUnmarshal(hdrBytes, &hdr); err != nil {
		return fmt.Errorf("put header: %w", err)
	}
	r, err := activeSchema.decodeResource(resBytes)
	if err != nil {
		return err
	}
	c.Time = hdr.Time.UTC()
	c.Put = &PutCommand{Resource: r, IfVersion: hdr.IfVersion}
	return nil
}

type deletePayloadV1 struct {
	V         int           `json:"v"`
	Time      time.Time     `json:"time"`
	Type      resource.Type `json:"type"`
	Mesh      string        `json:"mesh,omitempty"`
	Name      string        `json:"name"`
	IfVersion uint64        `json:"ifVersion,omitempty"`
}

func encodeDelete(c Command) ([]byte, error) {
	if c.Delete == nil {
		return nil, errors.New("delete: missing key")
	}
	k := c.Delete.Key
	return json.Marshal(deletePayloadV1{V: deletePayloadVersion, Time: c.Time.UTC(),
		Type: k.Type, Mesh: k.Mesh, Name: k.Name, IfVersion: c.Delete.IfVersion})
}

func decodeDelete(payload []byte, c *Command) error {
	var p deletePayloadV1
	if err := decodeVersioned(payload, &p, deletePayloadVersion); err != nil {
		return err
	}
	if p.Type == "" || p.Name == "" {
		return errors.New("delete: key needs type and name")
	}
	c.Time = p.Time.UTC()
	c.Delete = &DeleteCommand{Key: resource.Key{Type: p.Type, Mesh: p.Mesh, Name: p.Name}, IfVersion: p.IfVersion}
	return nil
}

type ensurePayloadV1 struct {
	V    int       `json:"v"`
	Time time.Time `json:"time"`
}

func encodeEnsure(c Command) ([]byte, error) {
	return json.Marshal(ensurePayloadV1{V: ensurePayloadVersion, Time: c.Time.UTC()})
}

func decodeEnsure(payload []byte, c *Command) error {
	var p ensurePayloadV1
	if err := decodeVersioned(payload, &p, ensurePayloadVersion); err != nil {
		return err
	}
	c.Time = p.Time.UTC()
	return nil
}

// decodeVersioned checks the payload version before decoding strictly.
// When a payload version 2 appears, branch on the peeked version here.
func decodeVersioned(payload []byte, v any, known int) error {
	var peek struct {
		V int `json:"v"`
	}
	if err := json.Unmarshal(payload, &peek); err != nil {
		return err
	}
	if err := checkPayloadVersion(peek.V, known); err != nil {
		return err
	}
	return strictUnmarshal(payload, v)
}
