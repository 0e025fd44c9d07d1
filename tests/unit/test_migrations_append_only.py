"""Migrations and repairs are append-only: once one has landed, its SQL never changes.

A node that already ran a migration never runs it again, so an edit reaches only new nodes and
leaves every existing database with a different schema under the same version number (issue 12:
migration 1 was edited in place twice, and old nodes could no longer open).  The checksums below
are of each entry's SQL with whitespace collapsed (a reformat is fine, a change is not).  When a
test here fails: revert the edit and add a new migration (the next
src/coop/node/storage/migrations/NNNN_*.sql file, or a repair in storage/repairs.py) instead;
only a new entry is added to these lists.
"""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Final

from coop.node.storage.migrations import MIGRATIONS, NAMES, migrate
from coop.node.storage.repairs import REPAIRS

RELEASED_MIGRATIONS: Final = (
    "e6acc99ab2969bc05d4ffe5f361119a58024d5ecc760ba131f77799b0368a1de",  # 1
    "838570da14a5492ee5dcc71e5756bd3bf0ab869adfa90614601ed396e35e4634",  # 2
    "9f66999716e96354aabece1ff491fc40e289f3985b3496c74cd6288bba38b75d",  # 3
    "1decc83b49dc98d6f8a6eeb66df2f7dad2cee0584863732cfb3d1721f74e71fb",  # 4
    "3bc13578669d12b6f01854972c14c6504a77e277075fd38dd13718383e26c99f",  # 5
    "1a1c22cc64639eb2c5cb022d89358b5d323a28df8682a238c99b547348673437",  # 6
    "06f894d3f65eef7b3573c6247fea84892c9debf0fcbe25f200adcbd37cd58dfe",  # 7
    "c89c4e99a2ae117e99ce1aaff1bda9ad961275d0627cb56e43b361b5303102de",  # 8
    "6bd63493cfd7ca847cbfaa0ab0a405525a7e3c43fb7ae7c15e7398aaf56ba91c",  # 9
    "285fb3bc13b6d94992c4deb38e9c9e99a2b24905ebaa22cf742d87029c8175ec",  # 10
    "09ea0f79619904d9698c3db65fe4167b9a6f8060189c348ba2e63912d599b59b",  # 11
    "5998f70ec6a104dd9f920b89f5bf0dca89c2a6ddce07d83ebf45ae172f40a885",  # 12
    "0f9c4e04f6a62458419c583dc45388be1c7baf2b3e7f54604aa9988c08166ecc",  # 13
    "0f78d645494711853cf1abe709f834e1309ccded4f199594a0c75f181f9b6e7b",  # 14
    "c935a6ce7224346da241f24284417aedc03ce1489d5aa0ade634148424b60369",  # 15
    "7457d632ca8e0162c9391d6738b4626b2e756ad3ddcb5454f9266967ce4ebff3",  # 16
    "17498571513ab301e99c9d2106cb3b6c2c00e42ebe5cb88c4e5c70318a318e86",  # 17
    "f4b5dad10e2d49baf9e68683db43a94891997f18ac9ed036b695aabaa75ecd4d",  # 18
    "505f3561f87f1e78614ba70a8dde38b2de33b5a58d7b1aa6cb017f82450e7505",  # 19
    "2e39d48187638b41e92906bd0338134bca5c507feb292d7e9c0e183ec809e9f3",  # 20
    "d4d77c725cf92bc2b531e7f7a440a73ea849f5d78fff0745ef180ae58acbd488",  # 21
    "b0ccba273ee5f201fe130d4f33ecfd17c4465c1ea0c0705786e9dc0b76238dc3",  # 22
    "4b52bcf62609d65459376897296e2181253f5254406ee41e6b924c161a4de944",  # 23
    "928ca87879e875e58c40d05c00665b032ca9e502f7ecd1633accf1544e4f621f",  # 24
    "501b78454f6d770935a3cc863df6763c11363642ce3641041cdabe8c2e6eb058",  # 25
    "48bcdc4ccf46e7e42e0e900becd188c22e8628bba29efa6b6e393b3e23cd8353",  # 26
    "346f20afbc43024e50966c75a430c54a3093d00039a3cf9f0e6cbb7aa4d4ba1a",  # 27
)

RELEASED_REPAIRS: Final = {
    ("contents-apart", 8): "e7f79d2edecbdb5eb9f8a922ee779249f5131856fb0c2d664c577ab6ed698b60",
    ("prompt-shown", 8): "0a5dec2bb52553f174ec99c28f2bef664d20cb338b661c456cce5284cfaf4c1a",
    ("listed-seq", 8): "d7c9eeccce5c263263eb8fccb63b302f4b0e384375dd1ded6b1df5bef5bd0968",
    ("idempotency-by-uid", 8): "d6905b887b9a9fb5fca0e351d26274e42743d1be157857a848f853dcd4937977",
}


def checksum(sql: str) -> str:
    return hashlib.sha256(" ".join(sql.split()).encode()).hexdigest()


def test_migrations_released_are_never_edited() -> None:
    assert len(MIGRATIONS) >= len(RELEASED_MIGRATIONS), "a released migration was removed"
    for number, expected in enumerate(RELEASED_MIGRATIONS, 1):
        assert checksum(MIGRATIONS[number - 1]) == expected, (
            f"migration {number} ({number:04d}_*.sql) was edited after it was released: add a new migration instead"
        )


def test_migrations_new_ones_are_added_to_the_checksum_list() -> None:
    assert len(MIGRATIONS) == len(RELEASED_MIGRATIONS), (
        "a migration was added: append its checksum to RELEASED_MIGRATIONS in this file"
    )
    assert len(NAMES) == len(MIGRATIONS), "every migration needs a name (migrations.NAMES)"


def test_repairs_released_are_never_edited() -> None:
    current = {(repair.name, repair.before): checksum(repair.sql) for repair in REPAIRS}
    for key, expected in RELEASED_REPAIRS.items():
        assert key in current, f"repair {key[0]} was removed or moved: add a new repair instead"
        assert current[key] == expected, (
            f"repair {key[0]} was edited after it was released: add a new repair instead"
        )
    assert set(current) == set(RELEASED_REPAIRS), (
        "a repair was added: append its checksum to RELEASED_REPAIRS"
    )


def test_repairs_find_nothing_to_do_on_a_new_database() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        migrate(conn)
        assert [repair.name for repair in REPAIRS if repair.needed(conn)] == []
    finally:
        conn.close()
