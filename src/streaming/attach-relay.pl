#!/usr/bin/perl
# Joins conmon's attach socket to this process's stdio for berthd, which cannot open the
# SOCK_SEQPACKET socket conmon serves (Node has no such sockets). Every packet from conmon starts
# with its stream (2 stdout, 3 stderr); it goes to stdout as: stream byte, 32-bit big-endian
# length, data. Bytes on stdin go to the socket; stdin EOF half-closes it, which makes conmon close
# the container's stdin when the container is stdin_once. Exits when conmon closes the socket.
use strict;
use warnings;
use Socket qw(AF_UNIX SOCK_SEQPACKET SHUT_WR pack_sockaddr_un);
use IO::Select;

my $path = shift or die "usage: attach-relay.pl ATTACH_SOCKET\n";
socket(my $sock, AF_UNIX, SOCK_SEQPACKET, 0) or die "socket: $!\n";
connect($sock, pack_sockaddr_un($path)) or die "cannot connect to $path: $!\n";
binmode STDIN;
binmode STDOUT;

sub write_all {
  my ($fh, $data) = @_;
  while (length $data) {
    my $n = syswrite($fh, $data);
    exit 0 unless defined $n;    # berthd went away
    substr($data, 0, $n) = '';
  }
}

my $sel = IO::Select->new($sock, \*STDIN);
while (1) {
  for my $fh ($sel->can_read) {
    if ($fh == $sock) {
      my $packet = '';
      defined recv($sock, $packet, 65536, 0) or exit 0;
      exit 0 if length($packet) == 0;
      my $data = substr($packet, 1);
      write_all(\*STDOUT, pack('CN', ord($packet), length $data) . $data);
    } else {
      my $n = sysread(STDIN, my $buf, 8192);
      if (!$n) {
        shutdown($sock, SHUT_WR);
        $sel->remove(\*STDIN);
        next;
      }
      # conmon reads one packet per read(2) into a fixed buffer: keep packets small.
      send($sock, $buf, 0) // exit 0;
    }
  }
}
