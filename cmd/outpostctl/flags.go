package main

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// spec is what one command accepts on its command line.
type spec struct {
	// form is the usage line printed with a usage error.
	form string
	// flags are the command's own flags. The global --json is taken by
	// every command, --addr and --token by every command that asks a node.
	flags []string
	// offline: the command asks no node, so --addr and --token would be
	// ignored and are refused.
	offline bool
}

// commands is every outpostctl command and its flags. All flags share one
// FlagSet (flags may come anywhere after the command), so run checks the
// flags given against this table before a command runs: a flag the
// command does not use is a usage error naming the flag and the command,
// never silently ignored (`kv put K V --tenant T` once wrote the region's
// store). A test walks this table with every flag the FlagSet defines.
var commands = map[string]spec{
	"status":              {form: "status"},
	"members":             {form: "members"},
	"kv get":              {form: "kv get KEY [--tenant T] [--consistent]", flags: []string{"tenant", "consistent"}},
	"kv put":              {form: "kv put KEY VALUE [--tenant T]", flags: []string{"tenant"}},
	"kv delete":           {form: "kv delete KEY [--tenant T]", flags: []string{"tenant"}},
	"kv list":             {form: "kv list [PREFIX] [--tenant T] [--consistent]", flags: []string{"tenant", "consistent"}},
	"audit verify":        {form: "audit verify [--provider] [--since OLD_CHECKPOINT] [--save FILE] [--key VKEY] [--region NAME]", flags: []string{"provider", "since", "save", "key", "region"}},
	"audit verify-record": {form: "audit verify-record SEQ [--tenant T] [--provider] [--since OLD_CHECKPOINT] [--save FILE] [--key VKEY] [--region NAME]", flags: []string{"tenant", "provider", "since", "save", "key", "region"}},
	"audit export":        {form: "audit export --out DIR [--provider] [--key VKEY] [--region NAME]", flags: []string{"out", "provider", "key", "region"}},
	"audit verify-export": {form: "audit verify-export DIR --key VKEY [--provider] [--region NAME] [--partial]", flags: []string{"key", "provider", "region", "partial"}, offline: true},
	"dev stop":            {form: "dev stop NODE"},
	"dev start":           {form: "dev start NODE"},

	"peers add":     {form: "peers add NAME --peer-addr HOST:PORT[,HOST:PORT…] --ca PEER-CA.pem --secret-file FILE|-", flags: []string{"peer-addr", "ca", "secret-file"}},
	"peers list":    {form: "peers list"},
	"peers remove":  {form: "peers remove NAME"},
	"links create":  {form: "links create --tenant T --peer P [--link-id ID]", flags: []string{"tenant", "peer", "link-id"}},
	"links list":    {form: "links list --tenant T", flags: []string{"tenant"}},
	"links remove":  {form: "links remove ID --tenant T --peer P", flags: []string{"tenant", "peer"}},
	"global health": {form: "global health"},
	"global agents": {form: "global agents --tenant T", flags: []string{"tenant"}},
	"global query":  {form: "global query QUERY --tenant T", flags: []string{"tenant"}},

	"dispatches create": {form: "dispatches create --kind K [--tenant T] [--selector S] [--payload JSON | --payload-file F|-] [--id ID]",
		flags: []string{"kind", "tenant", "selector", "payload", "payload-file", "id"}},
	"dispatches list":  {form: "dispatches list [--tenant T] [--after INDEX] [--consistent]", flags: []string{"tenant", "after", "consistent"}},
	"dispatches watch": {form: "dispatches watch [--kinds leader,lease,dispatch,fenced]", flags: []string{"kinds"}},
	"drill failover": {form: "drill failover [--mode transfer|isolate|stop] [--rounds N] [--isolate-for 5s] [--restart-after 2s]",
		flags: []string{"mode", "rounds", "isolate-for", "restart-after"}},
	"drill partition": {form: "drill partition --node ID [--duration 10s]", flags: []string{"node", "duration"}},

	"login":                  {form: "login USER [--password-stdin] [--tenant T [--role R]] [--ttl 12h]", flags: []string{"password-stdin", "tenant", "role", "ttl"}},
	"whoami":                 {form: "whoami"},
	"users create":           {form: "users create NAME [--region-admin] [--password-stdin]", flags: []string{"region-admin", "password-stdin"}},
	"users list":             {form: "users list"},
	"users unlock":           {form: "users unlock NAME"},
	"tenants create":         {form: "tenants create NAME --admin USER", flags: []string{"admin"}},
	"tenants list":           {form: "tenants list"},
	"tenants members list":   {form: "tenants members list TENANT"},
	"tenants members set":    {form: "tenants members set TENANT USER --role viewer|operator|admin", flags: []string{"role"}},
	"tenants members remove": {form: "tenants members remove TENANT USER"},
	"invitations list":       {form: "invitations list USER [--password-stdin]", flags: []string{"password-stdin"}},
	"invitations accept":     {form: "invitations accept TENANT USER [--password-stdin]", flags: []string{"password-stdin"}},
	"invitations decline":    {form: "invitations decline TENANT USER [--password-stdin]", flags: []string{"password-stdin"}},
	"tenants settings":       {form: "tenants settings TENANT [--breakglass-auto-approve=true|false]", flags: []string{"breakglass-auto-approve"}},
	"tenants audit":          {form: "tenants audit TENANT [--provider]", flags: []string{"provider"}},
	"tokens api create":      {form: "tokens api create --name N --role R [--tenant T] [--ttl D]", flags: []string{"name", "role", "tenant", "ttl"}},
	"tokens api list":        {form: "tokens api list [--tenant T]", flags: []string{"tenant"}},
	"tokens api revoke":      {form: "tokens api revoke ID [--tenant T]", flags: []string{"tenant"}},
	"tokens create":          {form: "tokens create --tenant T [--ttl 15m]", flags: []string{"tenant", "ttl"}},
	"tokens list":            {form: "tokens list --tenant T", flags: []string{"tenant"}},
	"tokens revoke":          {form: "tokens revoke ID --tenant T", flags: []string{"tenant"}},
	"agents list":            {form: "agents list [--tenant T]", flags: []string{"tenant"}},
	"agents revoke":          {form: "agents revoke ID [--tenant T]", flags: []string{"tenant"}},
	"agents clear-flags":     {form: "agents clear-flags ID [--tenant T]", flags: []string{"tenant"}},
	"breakglass request":     {form: "breakglass request TENANT --reason TEXT [--duration 1h]", flags: []string{"reason", "duration"}},
	"breakglass list":        {form: "breakglass list [TENANT]"},
	"breakglass approve":     {form: "breakglass approve TENANT ID"},
	"keys status":            {form: "keys status"},
	"keys rotate":            {form: "keys rotate"},
}

// accepts reports whether the command takes flag name.
func (s spec) accepts(name string) bool {
	switch name {
	case "json":
		return true
	case "addr", "token":
		return !s.offline
	}
	return slices.Contains(s.flags, name)
}

// takes lists the flags the command accepts, for the error.
func (s spec) takes() string {
	var out []string
	for _, f := range s.flags {
		out = append(out, "--"+f)
	}
	if !s.offline {
		out = append(out, "--addr", "--token")
	}
	return strings.Join(append(out, "--json"), ", ")
}

// checkFlags refuses a flag given on the command line that cmd does not
// use (exit 2), naming the flag and the command.
func checkFlags(cmd string, s spec, fs *flag.FlagSet, stderr io.Writer) error {
	var bad []string
	fs.Visit(func(f *flag.Flag) {
		if !s.accepts(f.Name) {
			bad = append(bad, f.Name)
		}
	})
	if len(bad) == 0 {
		return nil
	}
	fmt.Fprintf(stderr, "outpostctl %s: --%s does not apply to this command (%s takes %s)\n", cmd, bad[0], cmd, s.takes())
	return usageErr(stderr, s.form)
}
