"""Base: the ``plugin__table`` naming rule and the constraint naming convention.

Models that are accepted are declared on ``Local``, an abstract subclass of ``Base`` with a
MetaData of its own (carrying ``Base``'s naming convention), so these test tables never reach
``Base.metadata`` and so never reach anybody's ``create_all``. Refused models are refused
before SQLAlchemy maps them.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.schema import CreateIndex, CreateTable

from db_manager import NAMING_CONVENTION, Base, TableNameError, check_table_name


class Local(Base):
    __abstract__ = True
    metadata = MetaData(naming_convention=Base.metadata.naming_convention)


class PluginModel(Local):
    __abstract__ = True
    __plugin__ = "tests"


def table_of(model: type[Any]) -> Table:
    return cast(Table, model.__table__)


def declare(name: str, base: type[Base] = Local, **namespace: Any) -> type[Base]:
    """Declare a model class named ``name`` with one integer primary key."""
    namespace.setdefault("__annotations__", {})["id"] = Mapped[int]
    namespace["id"] = mapped_column(primary_key=True)
    return type(name, (base,), namespace)


# -- table names ---------------------------------------------------------------------------


def test_base_metadata_carries_the_naming_convention() -> None:
    for key in ("ix", "uq", "ck", "fk", "pk"):
        assert Base.metadata.naming_convention[key] == NAMING_CONVENTION[key]


def test_plugin_double_underscore_table_name_is_accepted() -> None:
    model = declare("AcceptedName", __tablename__="tests__accepted_names")

    assert table_of(model).name == "tests__accepted_names"
    assert "tests__accepted_names" not in Base.metadata.tables


@pytest.mark.parametrize(
    "name",
    [
        "users",  # no plugin part
        "app_users",  # a single underscore is not the separator
        "app___users",  # three underscores
        "app__users__extra",  # two separators
        "App__Users",  # upper case
        "app__users-v2",  # a dash
        "__users",  # empty plugin part
        "app__",  # empty table part
        "1app__users",  # starts with a digit
        "app__users_",  # trailing underscore
    ],
)
def test_table_name_not_of_the_form_plugin__table_is_refused_at_class_creation(
    name: str,
) -> None:
    with pytest.raises(TableNameError, match="plugin_name__table_name") as info:
        declare("BadName", __tablename__=name)

    assert "BadName" in str(info.value)
    assert repr(name) in str(info.value)
    assert name not in Local.metadata.tables


def test_table_name_longer_than_63_characters_is_refused_at_class_creation() -> None:
    name = "tests__" + "t" * 57  # 64 characters
    assert len(name) == 64

    with pytest.raises(TableNameError, match="64 characters") as info:
        declare("TooLong", __tablename__=name)

    assert "63" in str(info.value)
    assert name not in Local.metadata.tables


def test_table_name_of_exactly_63_characters_is_accepted() -> None:
    name = "tests__" + "t" * 56
    assert len(name) == 63

    model = declare("LongestAllowed", __tablename__=name)

    assert table_of(model).name == name


def test_table_name_too_long_only_after_the_plugin_prefix_is_refused() -> None:
    table = "t" * 57  # fine alone, 64 with "tests__"

    with pytest.raises(TableNameError, match="64 characters"):
        declare("TooLongWithPrefix", PluginModel, __tablename__=table)


def test_table_name_error_is_a_type_error_too() -> None:
    # Class creation failures are TypeErrors in Python; keep it catchable as one.
    with pytest.raises(TypeError):
        declare("StillBad", __tablename__="nope")


def test_check_table_name_returns_a_good_name() -> None:
    assert check_table_name("db_manager__telegram_updates") == "db_manager__telegram_updates"


# -- __plugin__ ------------------------------------------------------------------------------


def test_plugin_prefixes_the_table_name() -> None:
    model = declare("PrefixedThing", PluginModel, __tablename__="prefixed_things")

    assert model.__tablename__ == "tests__prefixed_things"
    assert table_of(model).name == "tests__prefixed_things"
    assert "tests__prefixed_things" in Local.metadata.tables


def test_plugin_leaves_a_fully_spelled_name_alone() -> None:
    model = declare("SpelledOut", PluginModel, __tablename__="tests__spelled_out")

    assert table_of(model).name == "tests__spelled_out"


def test_plugin_prefix_is_inherited_by_deeper_abstract_bases() -> None:
    deeper = type("DeeperModel", (PluginModel,), {"__abstract__": True})

    model = declare("DeepThing", deeper, __tablename__="deep_things")

    assert table_of(model).name == "tests__deep_things"


@pytest.mark.parametrize("plugin", ["Tests", "my-plugin", "a__b", "_x", ""])
def test_bad_plugin_name_is_refused(plugin: str) -> None:
    with pytest.raises(TableNameError, match="__plugin__"):
        type("BadPlugin", (Local,), {"__abstract__": True, "__plugin__": plugin})


def test_abstract_model_needs_no_table_name() -> None:
    abstract = type("NoTable", (Local,), {"__abstract__": True})

    assert not hasattr(abstract, "__table__")


# -- constraint naming convention ----------------------------------------------------------


class NamingParent(PluginModel):
    __tablename__ = "naming_parents"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)


class NamingChild(PluginModel):
    __tablename__ = "naming_children"
    __table_args__ = (
        UniqueConstraint("parent_id", "name"),
        CheckConstraint("length(name) > 0", name="name_not_empty"),
        Index(None, "name", "parent_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey(NamingParent.id), index=True)
    name: Mapped[str] = mapped_column(String(50))


def test_constraints_are_named_by_the_convention() -> None:
    table = table_of(NamingChild)
    names = {str(constraint.name) for constraint in table.constraints}

    assert names == {
        "pk_tests__naming_children",
        "uq_tests__naming_children_parent_id_name",
        "ck_tests__naming_children_name_not_empty",
        "fk_tests__naming_children_parent_id_tests__naming_parents",
    }
    assert {str(index.name) for index in table.indexes} == {
        "ix_tests__naming_children_parent_id",
        "ix_tests__naming_children_name",
    }


def test_column_level_unique_is_named_by_the_convention() -> None:
    names = {str(constraint.name) for constraint in table_of(NamingParent).constraints}

    assert names == {"pk_tests__naming_parents", "uq_tests__naming_parents_code"}


@pytest.mark.parametrize("dialect", [postgresql.dialect(), sqlite.dialect()])
def test_compiled_ddl_uses_the_conventional_names(dialect: Any) -> None:
    ddl = str(CreateTable(table_of(NamingChild)).compile(dialect=dialect))
    indexes = [
        str(CreateIndex(index).compile(dialect=dialect)) for index in table_of(NamingChild).indexes
    ]

    assert "CONSTRAINT pk_tests__naming_children PRIMARY KEY" in ddl
    assert "CONSTRAINT uq_tests__naming_children_parent_id_name UNIQUE" in ddl
    assert "CONSTRAINT ck_tests__naming_children_name_not_empty CHECK" in ddl
    assert "CONSTRAINT fk_tests__naming_children_parent_id_tests__naming_parents FOREIGN KEY" in ddl
    assert any("CREATE INDEX ix_tests__naming_children_parent_id " in sql for sql in indexes)


def test_conventional_names_longer_than_63_characters_are_shortened_for_postgresql() -> None:
    long_model = declare(
        "LongFk",
        PluginModel,
        __tablename__="a_rather_long_table_name_for_children",
        __annotations__={"naming_parent_identifier": Mapped[int]},
        naming_parent_identifier=mapped_column(ForeignKey(NamingParent.id)),
    )

    ddl = str(CreateTable(table_of(long_model)).compile(dialect=postgresql.dialect()))
    fk_name = ddl.split("CONSTRAINT fk_")[1].split(" ")[0]

    assert len("fk_" + fk_name) <= 63
