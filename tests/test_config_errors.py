"""jsonargparse's nested error trees → one line naming the key (messages as jsonargparse 4.53 writes them)."""

from tl_lightning.cli.config_errors import one_line

NESTED_UNKNOWN = """Parser key "model":
  Does not validate against any of the Union subtypes
  Subtypes: [<class 'lightning.pytorch.core.module.LightningModule'>, <class 'NoneType'>]
  Errors:
    - Problem with given class_path 'tl_lightning.systems.sft.SFTSystem':
        Parser key "policy.lora":
          Does not validate against any of the Union subtypes
          Subtypes: [<class 'tl_lightning.models.loading.LoraSettings'>, <class 'NoneType'>]
          Errors:
            - Problem with given class_path 'tl_lightning.models.loading.LoraSettings':
                Option 'rr' is not accepted
            - Expected a <class 'NoneType'>
          Given value type: <class 'dict'>
          Given value: {'rr': 3}
    - Expected a <class 'NoneType'>
  Given value type: <class 'dict'>
  Given value: {'init_args': {'policy': {'lora': {'rr': 3}}}}"""

GROUP_UNKNOWN = """Parser key "model":
  Does not validate against any of the Union subtypes
  Subtypes: [<class 'lightning.pytorch.core.module.LightningModule'>, <class 'NoneType'>]
  Errors:
    - Problem with given class_path 'tl_lightning.systems.sft.SFTSystem':
        Group 'policy' does not accept option 'checkpointt'
    - Expected a <class 'NoneType'>
  Given value type: <class 'dict'>
  Given value: {'init_args': {'policy': {'checkpointt': 'x'}}}"""

BAD_CHOICE = """Parser key "model":
  Does not validate against any of the Union subtypes
  Subtypes: [<class 'lightning.pytorch.core.module.LightningModule'>, <class 'NoneType'>]
  Errors:
    - Problem with given class_path 'tl_lightning.systems.sft.SFTSystem':
        Parser key "policy.quantization":
          Does not validate against any of the Union subtypes
          Subtypes: [typing.Literal['nf4', 'int8', 'none'], <class 'NoneType'>]
          Errors:
            - Expected a typing.Literal['nf4', 'int8', 'none']
            - Expected a <class 'NoneType'>
          Given value type: <class 'str'>
          Given value: nf5
    - Expected a <class 'NoneType'>
  Given value type: <class 'jsonargparse._util.NestedArg'>
  Given value: NestedArg(key='policy.quantization', val='nf5')"""


def test_unknown_key_in_a_nested_dataclass_names_the_full_key_and_the_closest():
    assert one_line(NESTED_UNKNOWN) == ("unknown config key 'model.init_args.policy.lora.rr': did you mean 'r'? "
                                        "(LoraSettings accepts: r, alpha, dropout, target_modules, modules_to_save)")


def test_unknown_key_in_a_group_resolves_the_group_type():
    line = one_line(GROUP_UNKNOWN)
    assert line.startswith("unknown config key 'model.init_args.policy.checkpointt': did you mean 'checkpoint'? "
                           "(ModelSettings accepts: checkpoint, build,")


def test_bad_choice_names_the_key_the_choices_and_the_value():
    assert one_line(BAD_CHOICE) == ("invalid value for 'model.init_args.policy.quantization': expected one of 'nf4', "
                                    "'int8', 'none', got 'nf5'")


def test_anything_else_is_still_one_line():
    assert one_line("something\n   unexpected\n") == "something unexpected"
