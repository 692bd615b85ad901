package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	v1 "github.com/weftnet/weft/pkg/apis/broker/v1alpha1"
	"github.com/weftnet/weft/pkg/broker/client"
)

// adminFlags locate the admin credential the broker wrote at init.
type adminFlags struct{ path string }

func (a *adminFlags) register(cmd *cobra.Command) {
	def := os.Getenv("WEFT_ADMIN_CONFIG")
	if def == "" {
		def = "/var/lib/weft-broker/admin.json"
	}
	cmd.PersistentFlags().StringVar(&a.path, "admin-config", def, "broker admin credential (written by the broker at init; env WEFT_ADMIN_CONFIG)")
}

func (a *adminFlags) client() (v1.AdminServiceClient, func(), error) {
	raw, err := os.ReadFile(a.path)
	if err != nil {
		return nil, nil, fmt.Errorf("--admin-config: %w", err)
	}
	creds, err := client.UnmarshalCredentials(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("--admin-config %s: %w", a.path, err)
	}
	conn, err := client.Dial(creds, "")
	if err != nil {
		return nil, nil, err
	}
	return v1.NewAdminServiceClient(conn), func() { conn.Close() }, nil
}

func newTokenCmd() *cobra.Command {
	var af adminFlags
	cmd := &cobra.Command{Use: "token", Short: "Join tokens: create, list, revoke"}
	af.register(cmd)
	var (
		ttl     time.Duration
		uses    uint32
		cluster string
		desc    string
	)
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a join token; prints one string to hand to the joining cluster",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			adm, done, err := af.client()
			if err != nil {
				return err
			}
			defer done()
			ctx, cancel := context.WithTimeout(cmd.Context(), 15*time.Second)
			defer cancel()
			resp, err := adm.CreateToken(ctx, &v1.CreateTokenRequest{Ttl: durationpb.New(ttl), Uses: uses, ClusterId: cluster, Description: desc})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), resp.Token)
			fmt.Fprintf(cmd.ErrOrStderr(), "token %s expires %s\n", resp.Id, resp.Expires.AsTime().Local().Format(time.RFC3339))
			return nil
		},
	}
	create.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "lifetime")
	create.Flags().Uint32Var(&uses, "uses", 1, "number of joins the token admits")
	create.Flags().StringVar(&cluster, "cluster-id", "", "only this cluster may join with the token (needed to re-join an existing id)")
	create.Flags().StringVar(&desc, "description", "", "free text shown by token list")
	list := &cobra.Command{
		Use:   "list",
		Short: "List tokens (secrets are never shown)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			adm, done, err := af.client()
			if err != nil {
				return err
			}
			defer done()
			resp, err := adm.ListTokens(cmd.Context(), &v1.ListTokensRequest{})
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tCLUSTER\tUSED\tEXPIRES\tSTATE\tJOINED\tDESCRIPTION")
			now := time.Now()
			for _, t := range resp.Tokens {
				state := "valid"
				switch {
				case t.Revoked:
					state = "revoked"
				case !now.Before(t.Expires.AsTime()):
					state = "expired"
				case t.Used >= t.Uses:
					state = "used up"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\n", t.Id, dash(t.ClusterId), t.Used, t.Uses,
					t.Expires.AsTime().Local().Format(time.RFC3339), state, dash(strings.Join(t.JoinedClusters, ",")), t.Description)
			}
			return tw.Flush()
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			adm, done, err := af.client()
			if err != nil {
				return err
			}
			defer done()
			if _, err := adm.RevokeToken(cmd.Context(), &v1.RevokeTokenRequest{Id: args[0]}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token %s revoked\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func newBrokerCmd() *cobra.Command {
	var af adminFlags
	cmd := &cobra.Command{Use: "broker", Short: "Inspect the broker"}
	af.register(cmd)
	cmd.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "Clusters with their endpoints, exports and staleness",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			adm, done, err := af.client()
			if err != nil {
				return err
			}
			defer done()
			resp, err := adm.ListClusters(cmd.Context(), &v1.ListClustersRequest{})
			if err != nil {
				return err
			}
			sort.Slice(resp.Clusters, func(i, j int) bool { return resp.Clusters[i].Id < resp.Clusters[j].Id })
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "CLUSTER\tPOD CIDRS\tSERVICE CIDRS\tGLOBAL CIDR\tENDPOINTS\tEXPORTS\tLAST HEARTBEAT\tSTATE")
			stale := 0
			for _, c := range resp.Clusters {
				state := "ok"
				if c.Stale {
					state, stale = "STALE", stale+1
				}
				hb := "-"
				if c.LastHeartbeat != nil {
					hb = time.Since(c.LastHeartbeat.AsTime()).Round(time.Second).String() + " ago"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", c.Id, strings.Join(c.PodCidrs, ","), strings.Join(c.ServiceCidrs, ","),
					dash(c.GlobalCidr), resp.Endpoints[c.Id], resp.Exports[c.Id], hb, state)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d clusters, %d stale\n", len(resp.Clusters), stale)
			return nil
		},
	})
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
